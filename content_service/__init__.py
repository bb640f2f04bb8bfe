"""The content service: lessons ("units"), their quizzes and answer keys.

Layering: ``pack`` (read, parse and validate a JSON pack) and ``quiz``
(grade answers) are pure; ``store`` keeps units in LMDB with a read cache
and one writer; ``core`` holds the operations (validation, import, grading);
``grpc_edge`` is the gRPC edge only; ``service`` builds the parts, runs their
lifecycle and holds the offline import the CLI uses. Answer keys never leave
this package.
"""

from content_service.config import ContentConfig
from content_service.pack import parse_pack
from content_service.quiz import QuizResult, verify
from content_service.service import (
    ContentService,
    import_pack_file,
    import_pack_text,
    load_sample_pack,
)
from content_service.store import ImportSummary

__all__ = [
    "ContentConfig",
    "ContentService",
    "ImportSummary",
    "QuizResult",
    "import_pack_file",
    "import_pack_text",
    "load_sample_pack",
    "parse_pack",
    "verify",
]
