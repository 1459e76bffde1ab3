"""Plain torch/numpy image and mask work: no ComfyUI, no onnxruntime."""
