"""radlens.report"""
