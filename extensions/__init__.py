"""Code that plugs into Jupyter: hub authenticators and spawner, the server extension, widgets."""
