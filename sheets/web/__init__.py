"""The sheets app's pages: one module per page group, urls in `sheets.web.urls`."""
