# The harness is a pytest plugin (entry point `e2etests.plugin`); nothing to add here.
