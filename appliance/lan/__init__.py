"""The box on the office LAN: mDNS advertising of the web UI and discovery of other boxes."""
