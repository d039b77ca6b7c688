"""The voiceos daemon: the event bus, the control socket server and its synchronous client."""
