"""skyweave.listeners"""
