-- since v2
ALTER TABLE members ADD COLUMN email text;
