"""radlens.cam"""
