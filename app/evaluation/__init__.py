"""Monthly evaluation: rulesets (积分细则) stored and versioned; later rounds, committee, ratings, objections."""
