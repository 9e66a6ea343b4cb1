"""Chapter 6, compression: knowledge distillation, int8 quantization with torchao, charts, exercises."""
