"""skyweave.bus"""
