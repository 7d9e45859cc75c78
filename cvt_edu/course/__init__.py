"""The course around the code: figure text in Portuguese and Spanish, as one JSON file per language, and the
chapter's language (:mod:`.i18n`); the quizzes (:mod:`.quiz`)."""
