"""Pure numeric kernels on arrays: no pandas, no I/O, no logging."""
