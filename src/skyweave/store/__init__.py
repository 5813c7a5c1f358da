"""skyweave.store"""
