"""Vectorised kernels of radlens' radiomics engine (numpy), each at parity with pyradiomics."""
