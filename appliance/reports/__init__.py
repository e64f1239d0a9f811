"""Payment reports (PDF and Excel) and the dashboard's collection charts."""
