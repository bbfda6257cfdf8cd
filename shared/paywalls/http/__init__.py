"""The HTTP edge shared by the function apps: errors -> HTTP, auth, typed bodies, hosted pages."""
