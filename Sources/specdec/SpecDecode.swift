import Draft
import DataSynth
import Shards
import GGUF
import Foundation
import Generation
import Llama
import Sampling
import Tokenizer
import Verify


/// The CLI's names for the library's types.
typealias GenerationRun = GenerationResult
typealias PreparedPrompt = LMInput
