import os
from pathlib import Path

import pytest

from canistry.client import Identity


def test_identity_paths_may_be_str_or_pathlike(tmp_path: Path) -> None:
    as_text = str(tmp_path / "bob.pem")
    first = Identity.load_or_create(as_text)
    assert Identity.load(as_text).principal == first.principal

    class Where(os.PathLike[str]):
        def __fspath__(self) -> str:
            return as_text

    assert Identity.load_or_create(Where()).principal == first.principal
    with pytest.raises(FileExistsError):
        first.save(as_text)
