"""The application: PyQt6 window, command line and headless runs. Nothing imports this package."""
