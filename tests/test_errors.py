"""One line of an error for people: ``audio_thinker.errors.first_line``."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from audio_thinker.errors import first_line


def test_first_line_of_a_message_of_a_driver_or_of_nothing():
    assert first_line(ValueError("\n  bad value\nsecond line")) == "bad value"
    assert first_line(ValueError("x" * 50), limit=10) == "x" * 10
    driver = OperationalError("SELECT 1", {}, Exception("file is not a database\ndetail"))
    assert first_line(driver) == "file is not a database"
    assert first_line(ImportError()) == "ImportError"  # an empty message: its type, not an IndexError
