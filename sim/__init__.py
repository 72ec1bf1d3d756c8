"""Python cycle simulator of the metahw accelerator."""
