"""Loaded by every Python process of the real vLLM (API server, engine core, workers).

vLLM's CPU build uses AMX tiles when the CPU advertises them. In a sandbox or VM where the
kernel has not granted AMX to the process, the first AMX instruction raises SIGILL: the
worker dies ("exit code: -4") on the first request and the engine answers 500. Reporting
AMX as unavailable makes vLLM take its AVX-512 paths instead. Nothing else is changed.
"""

import torch.cpu

torch.cpu._is_amx_tile_supported = lambda: False
torch.cpu._is_amx_fp16_supported = lambda: False
