"""Shipped files: the demo model, vendored Leaflet, the favicon (package data `urbanclip.assets`)."""
