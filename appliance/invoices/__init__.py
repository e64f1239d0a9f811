"""Invoices: the printable page, the PDF (rendered off the request path and cached) and
payment QR codes."""
