"""`edgellama serve`: an OpenAI-compatible HTTP server over one shared Llama (optional extra:
``pip install "edgellama[server]"``).

- :mod:`.app`: the FastAPI app and its routes;
- :mod:`.schemas`: the request bodies it accepts (unknown parameters are refused);
- :mod:`.generation`: a request's choices as parallel generations, whole or streamed;
- :mod:`.errors`: every failure as OpenAI's error object.
"""


def create_app(llm, config):
    """The app (edgellama.server.app.create_app); imported lazily so that a missing extra is a
    clear error where the server is asked for, not at package import."""
    from edgellama.server.app import create_app as create

    return create(llm, config)
