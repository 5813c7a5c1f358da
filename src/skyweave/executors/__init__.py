"""skyweave.executors"""
