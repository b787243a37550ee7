"""edgellama: run quantized Llama-family models from GGUF files on-device."""
