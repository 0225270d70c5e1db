-- since v4
ALTER TABLE events ADD COLUMN member_id integer;
