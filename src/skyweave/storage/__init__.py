"""skyweave.storage"""
