"""What the tests and the bench share: the Procfile's processes, run for real."""
