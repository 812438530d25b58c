"""The synthetic L1000 compendium generator and bundled resources."""
