ALTER TABLE members ADD COLUMN email text;
