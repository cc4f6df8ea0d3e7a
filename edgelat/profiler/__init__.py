"""Host side of profiling: presets, inventory, transports, the agent client, builds and campaigns."""
