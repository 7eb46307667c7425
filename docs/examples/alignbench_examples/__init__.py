"""Example alignbench plugins (quoted in alignbench's README): a method and an eval."""
