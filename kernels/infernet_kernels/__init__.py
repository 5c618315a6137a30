"""Triton kernels for the inference runtime, each with a pure-PyTorch reference.

On CUDA the runtime calls the Triton kernels; on CPU it calls the references. Tests run the
kernels on CPU under ``TRITON_INTERPRET=1``.
"""
