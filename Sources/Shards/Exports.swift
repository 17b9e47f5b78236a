// SHA-256 and CRC-32 are part of the shard format: code that reads or writes shards sees them.
@_exported import Checksum
