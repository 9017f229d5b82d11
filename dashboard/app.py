"""The llmlens dashboard's entry script (``llmlens dashboard`` runs it with Streamlit).

Kept thin: open the store named by ``LLMLENS_DB_URL``, greet an empty store, draw the
shared sidebar filters, and run the selected view from ``views/``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from llmlens.dashboard import _sidebar, _source

_VIEWS = Path(__file__).parent / "views"


def main() -> None:
    """Draw one run of the app: navigation, the empty-store greeting or sidebar and view."""
    # An emoji icon: Streamlit draws it as an inline SVG, where a ":material/…:" page icon
    # makes every visitor's browser fetch it from fonts.gstatic.com.
    st.set_page_config(page_title="llmlens", page_icon="📈", layout="wide")
    navigation = st.navigation([
        st.Page(_VIEWS / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
        st.Page(_VIEWS / "cost.py", title="Cost", icon=":material/payments:"),
        st.Page(_VIEWS / "latency.py", title="Latency", icon=":material/timer:"),
        st.Page(_VIEWS / "failures.py", title="Failures", icon=":material/error:"),
        st.Page(_VIEWS / "traces.py", title="Traces", icon=":material/list_alt:"),
        st.Page(_VIEWS / "alerts.py", title="Alerts", icon=":material/notifications:"),
    ])
    url, store = _source.open_source()
    if _source.store_is_empty(url):
        _source.show_empty_store()
        return
    context = _sidebar.sidebar(url, store.url)
    _source.set_view_context(context)
    _source.show_losses(context)
    navigation.run()


if __name__ == "__main__":  # `streamlit run` executes this file as __main__; importing it draws nothing
    main()
