"""The dashboard's views, one page file each.

Streamlit runs a page file as ``__main__`` on every rerun, so each module draws only under
``if __name__ == "__main__"`` and otherwise just defines ``render(view)``: importing one
(tests, type checking) never draws anything. The folder is deliberately not named
``pages/``, which Streamlit would auto-discover alongside ``st.navigation``.
"""
