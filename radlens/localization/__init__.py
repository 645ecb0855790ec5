"""radlens.localization"""
