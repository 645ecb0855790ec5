"""radlens.radiomics"""
