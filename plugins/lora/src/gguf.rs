//! GGUF model files (being written).
