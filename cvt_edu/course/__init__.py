"""The course around the code: figure text in Portuguese and Spanish (:mod:`.i18n`) and the quizzes (:mod:`.quiz`)."""
