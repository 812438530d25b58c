"""Processing pipeline: Level 2 -> 3 -> 4 -> 5, one step per module, one shared runner."""
