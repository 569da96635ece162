"""Test-media generator for the nvJPEG / NVDEC media path (see media/gen.py)."""
