"""The store's tables as DataFrames, exports and public dataset formats."""
