"""Storage: the only code that opens files (GCT, GCTX, GMT/GRP, tables, stores)."""
