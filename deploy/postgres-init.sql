-- Run once by the postgres image when its data volume is new (deploy/compose.yaml): the image
-- creates POSTGRES_DB (alpha); this adds the second node's database.
CREATE DATABASE beta;
