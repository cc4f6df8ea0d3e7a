"""What runs on the device. ``agent.py`` is shipped alone and imports nothing of edgelat."""
