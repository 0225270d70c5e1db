-- since v1
CREATE TABLE members (id integer, name text);
