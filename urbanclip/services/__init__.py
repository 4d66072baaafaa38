"""What the app's pages call: context loading, cell profiles, search, map, runs.

Nothing here imports streamlit, so every service is testable without a browser.
"""
