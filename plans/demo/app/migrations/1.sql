CREATE TABLE members (id integer, name text);
