"""The rules engine (积分细则): pure functions from ratings, determinations and a ruleset to points lines and list
postings. It imports nothing from the database, the web or other domains."""
